"""The course review's nameko worker: dependencies and one-line entrypoints. The rules are in
domain/, each RPC's steps in handlers.py."""
from __future__ import annotations

from services.common.api import api
from services.common.entrypoints import SettingsProvider, Worker
from services.common.uow import UnitOfWorkProvider
from services.courses import handlers
from services.courses.repository import CoursesRepository
from services.courses.settings import load_settings
from services.courses.signatures import SignatureIndexProvider


class CourseReviewService(Worker):
    name = "courses"

    uow = UnitOfWorkProvider(CoursesRepository)
    settings = SettingsProvider(load_settings)
    # The worker's containment index over the stored signatures (services/courses/signatures.py)
    reuse = SignatureIndexProvider()

    # --- courses ------------------------------------------------------------------------
    @api
    def SubmitCourse(self, request, caller):
        return self.handle(handlers.submit_course, request, caller, reuse_index=self.reuse)

    @api
    def CheckCourse(self, request, caller):
        return self.handle(handlers.check_course, request, caller, reuse_index=self.reuse)

    @api
    def GetCourse(self, request, caller):
        return self.handle(handlers.get_course, request, caller)

    @api
    def ReviewCourse(self, request, caller):
        return self.handle(handlers.review_course, request, caller)

    @api
    def ListCourses(self, request, caller):
        return self.handle(handlers.list_courses, request, caller)

    @api
    def DeleteCourse(self, request, caller):
        return self.handle(handlers.delete_course, request, caller, reuse_index=self.reuse)

    @api
    def ResolveCopyrightConflict(self, request, caller):
        return self.handle(handlers.resolve_copyright_conflict, request, caller)

    # --- providers ----------------------------------------------------------------------
    @api
    def RecordProviderIssue(self, request, caller):
        return self.handle(handlers.record_provider_issue, request, caller)

    @api
    def SanctionProvider(self, request, caller):
        return self.handle(handlers.sanction_provider, request, caller)

    @api
    def AcceptRectification(self, request, caller):
        return self.handle(handlers.accept_rectification, request, caller)

    @api
    def GetProvider(self, request, caller):
        return self.handle(handlers.get_provider, request, caller)

    # --- learning, cheating, employers ----------------------------------------------------
    @api
    def RecordLearning(self, request, caller):
        return self.handle(handlers.record_learning, request, caller)

    @api
    def ConfirmCheating(self, request, caller):
        return self.handle(handlers.confirm_cheating, request, caller)

    @api
    def AcceptEmployerRectification(self, request, caller):
        return self.handle(handlers.accept_employer_rectification, request, caller)

    @api
    def GetEmployerStatus(self, request, caller):
        return self.handle(handlers.get_employer_status, request, caller)

    # --- statistics and ratings -------------------------------------------------------------
    @api
    def GetItemStatistics(self, request, caller):
        return self.handle(handlers.get_item_statistics, request, caller)

    @api
    def RateCourse(self, request, caller):
        return self.handle(handlers.rate_course, request, caller)

    @api
    def ListTopCourses(self, request, caller):
        return self.handle(handlers.list_top_courses, request, caller)
